// Structured JSON logs (pino) to stderr, so stdout stays free for command output such as `mechreward packs`.
import { pino, type Logger as PinoLogger } from 'pino';

export type Logger = PinoLogger;

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'mechreward' } }, pino.destination(2));
}
