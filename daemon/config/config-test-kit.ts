/** What the config tests share: the smallest valid leader.yml and the problems a parse reports. */
import { ConfigError } from './config-file.js';

/** The smallest leader.yml that parses: a GitLab URL, token and webhook secret. */
export const MINIMAL_LEADER_YML = 'gitlab:\n  url: https://gitlab.example.org\n  token: t\n  webhook_secret: s\n';

/** The problems a ConfigError thrown by `fn` lists; empty when `fn` parses. Other errors are thrown. */
export function configProblems(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  return [];
}

/** The message of the ConfigError `fn` throws; throws when it parses, or fails otherwise. */
export function configMessage(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.message;
    throw err;
  }
  throw new Error('expected a ConfigError');
}
