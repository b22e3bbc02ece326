// @ts-check
/**
 * Preloaded into a gateway process by a test (`node --import <this> ...`): records which npm
 * packages the process's ES modules import, through a module resolve hook, and prints them as
 * one stdout line `{"packages":[...]}` when the process gets SIGUSR2.
 */
import { register } from 'node:module';
import process from 'node:process';
import { MessageChannel } from 'node:worker_threads';

const { port1, port2 } = new MessageChannel();
/** @type {Set<string>} */
const packages = new Set();
port1.on('message', (name) => packages.add(String(name)));
port1.unref();
register('./hooks.mjs', import.meta.url, { data: { port: port2 }, transferList: [port2] });
process.on('SIGUSR2', () => {
  process.stdout.write(`${JSON.stringify({ packages: [...packages].sort() })}\n`);
});
