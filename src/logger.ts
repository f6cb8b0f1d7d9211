import pino, { type Logger } from 'pino';

/**
 * One structured logger for the process. Credentials that may travel in headers are
 * redacted, so a debug dump of a request never leaks a token.
 */
export function createLogger(level: string): Logger {
  return pino({
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
  });
}
