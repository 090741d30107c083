/** The policies the reload tests (file change, `reloadPolicy`) and the SIGHUP tests swap between. */
export const BASE = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: open-area
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['open/#']

  - name: news-readers
    allow: [subscribe, receive]
    subjects: all
    topics: ['news/#']

  - name: news-desk
    allow: publish
    subjects: { clients: ['desk'] }
    topics: ['news/#']
`;

export const WITH_BETA = `${BASE}
  - name: beta-opened
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['beta/#']
`;

/** news readers removed: live subscriptions to news/# must stop. */
export const WITHOUT_NEWS_READERS = `version: 1
rules:
  - name: everyone-connects
    allow: connect
    subjects: all
    why: These tests are about topic rules; every client may connect.

  - name: open-area
    allow: [publish, subscribe, receive]
    subjects: all
    topics: ['open/#']

  - name: news-desk
    allow: publish
    subjects: { clients: ['desk'] }
    topics: ['news/#']
`;
