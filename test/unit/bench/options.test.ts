import { describe, expect, it } from 'vitest';
import { parseBenchOptions } from '../../../bench/options.js';

describe('bench options: --against', () => {
  it('aedes with a port runs aedes on that port', () => {
    expect(parseBenchOptions(['--against', 'aedes:1884']).against).toEqual([{ kind: 'aedes', port: 1884 }]);
  });

  it('aedes without a port leaves the port to the bench (a free one per start)', () => {
    expect(parseBenchOptions(['--against', 'aedes']).against).toEqual([{ kind: 'aedes' }]);
  });

  it('mosquitto and aedes together run both, in the order given', () => {
    const { against } = parseBenchOptions(['--against', 'mosquitto:1885', '--against', 'aedes']);
    expect(against).toEqual([{ kind: 'mosquitto', port: 1885 }, { kind: 'aedes' }]);
  });

  it.each(['aedes:0', 'aedes:65536', 'aedes:abc', 'aedes:1884x', 'aedes:', 'aedes:-1', 'mosquitto:1.5'])(
    'refuses %s as not a port number',
    (value) => {
      expect(() => parseBenchOptions(['--against', value])).toThrow(/not a port number/);
    },
  );

  it('refuses a broker it does not know', () => {
    expect(() => parseBenchOptions(['--against', 'hivemq'])).toThrow(/unknown broker/);
  });

  it('a broker given twice runs once, but two different ports for it are a contradiction', () => {
    expect(parseBenchOptions(['--against', 'aedes', '--against', 'aedes:1884']).against).toEqual([
      { kind: 'aedes', port: 1884 },
    ]);
    expect(() => parseBenchOptions(['--against', 'aedes:1884', '--against', 'aedes:1886'])).toThrow(/already given/);
  });

  it('the latency scenario polls unless told to sleep, and takes nothing else', () => {
    expect(parseBenchOptions([]).latencyWait).toBe('poll');
    expect(parseBenchOptions(['--latency-wait', 'sleep']).latencyWait).toBe('sleep');
    expect(() => parseBenchOptions(['--latency-wait', 'spin'])).toThrow(/--latency-wait spin: poll or sleep/);
  });

  it('refuses mosquitto and aedes on the same fixed port', () => {
    expect(() => parseBenchOptions(['--against', 'mosquitto:1884', '--against', 'aedes:1884'])).toThrow(
      /cannot share a port/,
    );
  });
});
