/** Public API of the package: run the gateway in-process, and the wire types for clients. */
export { loadConfig, ConfigError, type Config, type Env } from './config.js';
export { createNodeServer, type NodeServer } from './node/server.js';
export { ERROR_CODES, type ErrorCode } from './errors.js';
export type * from './protocol/socket-events.js';
