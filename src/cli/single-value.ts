import { InvalidArgumentError } from 'commander';

/**
 * A commander option parser for an option that takes one value: commander keeps the last of repeated values, so
 * `--ip A --ip B` would silently mean B alone (a ban that leaves A connected, an audit query whose answer holds
 * records of a filter the reviewer did not give). A second value is refused instead, naming the first.
 * `why` says what to do instead. Options using it must not have a commander default (it arrives as `previous`, so
 * the first value given would be refused): the default is applied where the value is read, and named in the help
 * with `shownDefault`.
 */
export function single<T = string>(
  why: string,
  parse: (value: string) => T = (value) => value as T,
): (value: string, previous: T | undefined) => T {
  return (value, previous) => {
    if (previous !== undefined)
      throw new InvalidArgumentError(`given more than once (also "${String(previous)}"); ${why}`);
    return parse(value);
  };
}

/** The help's note of a default applied after parsing, worded as commander words its own defaults. */
export function shownDefault(value: string): string {
  return `(default: ${JSON.stringify(value)})`;
}
