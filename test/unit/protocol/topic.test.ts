import { describe, expect, it } from 'vitest';
import { checkTopicFilter, checkTopicName, parseSharedFilter, topicMatches } from '../../../src/protocol/topic.js';

describe('topic names', () => {
  it.each([
    ['a/b', undefined],
    ['/', undefined],
    ['', 'empty'],
    ['a/+', 'wildcard'],
    ['a/#', 'wildcard'],
    ['a\u0000b', 'nullCharacter'],
    ['a\ufffdb', undefined],
  ])('%j is %s', (topic, problem) => {
    expect(checkTopicName(topic)).toBe(problem);
  });

  it('refuses names longer than the configured maximum', () => {
    expect(checkTopicName('abcd', 3)).toBe('tooLong');
    expect(checkTopicName('abc', 3)).toBeUndefined();
  });
});

describe('topic filters', () => {
  it.each([
    ['#', undefined],
    ['+', undefined],
    ['a/+/b', undefined],
    ['+/+', undefined],
    ['a/#', undefined],
    ['a#', 'badWildcard'],
    ['a/#/b', 'badWildcard'],
    ['a+/b', 'badWildcard'],
    ['a/b+', 'badWildcard'],
    ['', 'empty'],
    ['a\u0000', 'nullCharacter'],
  ])('%j is %s', (filter, problem) => {
    expect(checkTopicFilter(filter)).toBe(problem);
  });
});

describe('matching', () => {
  it.each([
    ['a/b', 'a/b', true],
    ['a/+', 'a/b', true],
    ['a/+', 'a/', true],
    ['a/+', 'a/b/c', false],
    ['a/#', 'a', true],
    ['a/#', 'a/b/c', true],
    ['#', 'a/b', true],
    ['+/+', 'a/b', true],
    ['+/#', 'a', true],
    ['a/b', 'a', false],
    ['a', 'a/b', false],
    ['+', '/a', false],
    ['/+', '/a', true],
    ['#', '$SYS/broker', false],
    ['+/broker', '$SYS/broker', false],
    ['$SYS/#', '$SYS/broker', true],
    ['$SYS/+', '$SYS/broker', true],
  ])('%j matches %j: %s', (filter, topic, expected) => {
    expect(topicMatches(filter, topic)).toBe(expected);
  });
});

describe('shared subscription filters', () => {
  it('splits group and filter', () => {
    expect(parseSharedFilter('$share/g1/a/+')).toEqual({ kind: 'shared', shared: { group: 'g1', filter: 'a/+' } });
    expect(parseSharedFilter('a/b')).toEqual({ kind: 'plain' });
  });
  it.each(['$share/g1', '$share//a', '$share/g+/a', '$share/g#/a', '$share/g/'])('%j is invalid', (filter) => {
    expect(parseSharedFilter(filter).kind).toBe('invalid');
  });
});
