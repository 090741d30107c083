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
    expect(() => parseBenchOptions(['--against', 'hivemq'])).toThrow(/unknown broker.*external:PORT/);
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

describe('bench options: an external broker', () => {
  it('external:PORT measures the broker running there, called "external" unless named', () => {
    const o = parseBenchOptions(['--against', 'mosquitto', '--against', 'external:1883']);
    expect(o.against).toEqual([{ kind: 'mosquitto' }, { kind: 'external', port: 1883 }]);
    expect(o.externalName).toBe('external');
    expect(o.externalPid).toBeUndefined();
    const named = parseBenchOptions([
      '--against',
      'external:1883',
      '--external-name',
      'emqx-5.8',
      '--external-pid',
      '42',
    ]);
    expect([named.externalName, named.externalPid]).toEqual(['emqx-5.8', 42]);
  });

  it('needs the port: the bench cannot choose one for a broker it does not start', () => {
    expect(() => parseBenchOptions(['--against', 'external'])).toThrow(/external: the port the running broker/);
    expect(() => parseBenchOptions(['--against', 'external:0'])).toThrow(/not a port number/);
  });

  it('may not share a port with a broker the bench starts', () => {
    expect(() => parseBenchOptions(['--against', 'external:1884', '--against', 'aedes:1884'])).toThrow(
      /cannot share a port/,
    );
  });

  it('refuses a name that would pass for another broker, or would not fit a column', () => {
    for (const name of ['mosquitto', 'bulwark', 'aedes', '', 'a b', 'x'.repeat(33), '-emqx'])
      expect(() => parseBenchOptions(['--against', 'external:1883', '--external-name', name]), name).toThrow(
        /--external-name/,
      );
  });

  it('refuses --external-name and --external-pid without an external broker, and a pid that is not one', () => {
    expect(() => parseBenchOptions(['--external-name', 'emqx'])).toThrow(/which was not given/);
    expect(() => parseBenchOptions(['--external-pid', '42'])).toThrow(/which was not given/);
    for (const pid of ['0', '-1', 'abc', '4.2'])
      expect(() => parseBenchOptions(['--against', 'external:1883', `--external-pid=${pid}`]), pid).toThrow(
        /not a process id/,
      );
  });
});
