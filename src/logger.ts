import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * One structured logger for the process. Credentials that may travel in headers are
 * redacted, so a debug dump of a request never leaks a token. Lines go to standard output
 * unless a destination is given.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    base: { service: 'glimpse' },
    redact: {
      paths: [
        'req.headers["x-auth-token"]',
        'req.headers["x-service-token"]',
        'req.headers.authorization',
      ],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
