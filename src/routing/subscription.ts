import type { QoS } from './message.js';
import type { Identity } from '../../authn/types.js';
import type { Session } from '../session/session.js';

/** One entry of a session's subscriptions, as held in the session and the subscription tree. */
export interface Subscription {
  readonly session: Session;
  /** The filter exactly as subscribed, `$share/group/...` included: the session's key for it. */
  readonly key: string;
  /** The filter matched against topics (without the `$share/group/` prefix). */
  readonly filter: string;
  readonly shareGroup: string | undefined;
  readonly qos: QoS;
  readonly noLocal: boolean;
  readonly retainAsPublished: boolean;
  readonly retainHandling: 0 | 1 | 2;
  readonly subscriptionId: number | undefined;
  /**
   * Whether the policy lets this identity receive everything the filter matches, as last worked out: deliveries
   * skip their own `receive` check while `identity` and `generation` (the broker's policy generation) still hold.
   */
  receiveProof: ReceiveProof | undefined;
}

export interface ReceiveProof {
  readonly identity: Identity;
  readonly generation: number;
  readonly proven: boolean;
}
