import { describe, expect, it } from 'vitest';
import { brokerOrder } from '../../../bench/harness.js';

describe('the order brokers run in, round by round', () => {
  it('puts each of three brokers in every place once over three rounds', () => {
    const brokers = ['bulwark', 'mosquitto', 'aedes'] as const;
    const rounds = [1, 2, 3].map((round) => brokerOrder(brokers, round));
    for (const order of rounds) expect([...order].sort()).toEqual([...brokers].sort());
    for (let place = 0; place < brokers.length; place++) {
      expect(new Set(rounds.map((order) => order[place])).size).toBe(brokers.length);
    }
    expect(brokerOrder(brokers, 4)).toEqual(rounds[0]);
  });

  it('alternates two brokers', () => {
    expect(brokerOrder(['bulwark', 'mosquitto'], 1)).toEqual(['bulwark', 'mosquitto']);
    expect(brokerOrder(['bulwark', 'mosquitto'], 2)).toEqual(['mosquitto', 'bulwark']);
  });
});
