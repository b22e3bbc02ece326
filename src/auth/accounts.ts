import type { Principal } from '../chat/principal.js';
import type { TurnTracker } from '../chat/turn-tracker.js';
import { AppError } from '../errors.js';
import type { Logger } from '../logger.js';
import { addressKey } from '../ratelimit/address-key.js';
import type { RateLimiter } from '../ratelimit/rate-limiter.js';
import { DuplicateEmailError, type ConversationStore, type User } from '../stores/conversation-store.js';
import type { PasswordHasher } from './password-hasher.js';
import type { SessionRegistry } from './session-registry.js';
import type { TokenService } from './token-service.js';

export interface AccountLimits {
  /** Register and login attempts per window per client IP. */
  perIp: number;
  /** Login attempts per window per account (email), whatever the IP: slows guessing from many addresses. */
  perAccount: number;
  windowMs: number;
  /** Per-IP throttles count an IPv6 client by its network of this many bits (addressKey). */
  ipv6Prefix: number;
}

export interface AccountsDeps {
  store: ConversationStore;
  hasher: PasswordHasher;
  tokens: TokenService;
  /** Without it (Workers on per-isolate memory) tokens cannot be revoked. */
  sessions: SessionRegistry | undefined;
  /** The account's gateway API keys: tokens too, so they end with its sessions (PROTOCOLS.md). */
  apiKeys: { revokeAll(userId: string): Promise<number> };
  limiter: RateLimiter;
  limits: AccountLimits;
  turns: TurnTracker;
  logger: Logger;
}

/**
 * Work other parts of the gateway must do when an account is deleted (memories, API keys).
 * Runs before the account itself goes: a hook that fails stops the deletion, so nothing the
 * user owned is left behind unreachable.
 */
export type AccountDeletionHook = (userId: string) => Promise<void>;

const LOGIN_FAILED = 'Invalid email or password';

/**
 * Sign-up, sign-in, sign-out (this session or all), password change and account deletion.
 * Every path that hashes is throttled per IP first (and sign-in per account too) so a burst
 * of guesses cannot make the server hash without bound; hashing itself is bounded by the
 * hasher.
 */
export class Accounts {
  readonly #deletionHooks: AccountDeletionHook[] = [];
  #decoy: Promise<string> | undefined;

  constructor(private readonly deps: AccountsDeps) {}

  onDelete(hook: AccountDeletionHook): void {
    this.#deletionHooks.push(hook);
  }

  /** Computed ahead, so the first unknown-email login costs what every other does. */
  warmUp(): void {
    void this.#decoyHash().catch(() => {});
  }

  async register(input: { email: string; password: string; name: string | null }, ip: string): Promise<{ user: User; token: string }> {
    await this.#throttle(`auth:ip:${addressKey(ip, this.deps.limits.ipv6Prefix)}`, this.deps.limits.perIp, 'Too many sign-in attempts; try again later');
    try {
      const user = await this.deps.store.createUser({ email: input.email, name: input.name, passwordHash: await this.deps.hasher.hash(normalised(input.password)) });
      this.deps.logger.info({ userId: user.id }, 'user registered');
      return { user, token: await this.#signIn(user) };
    } catch (err) {
      if (err instanceof DuplicateEmailError) throw new AppError('BAD_REQUEST', 'An account with this email already exists', { status: 409 });
      throw err;
    }
  }

  async login(input: { email: string; password: string }, ip: string): Promise<{ user: User; token: string }> {
    await this.#throttle(`auth:ip:${addressKey(ip, this.deps.limits.ipv6Prefix)}`, this.deps.limits.perIp, 'Too many sign-in attempts; try again later');
    // Keyed by a hash of the email, so unknown addresses are throttled alike and no address is kept in the limiter.
    await this.#throttle(`auth:account:${await sha256(input.email)}`, this.deps.limits.perAccount, 'Too many sign-in attempts for this account; try again later');
    const user = await this.deps.store.findUserByEmail(input.email);
    // Unknown email and wrong password cost the same and answer the same.
    const ok = await this.#verify(input.password, user?.passwordHash ?? (await this.#decoyHash()));
    if (!user || !ok) throw new AppError('UNAUTHORIZED', LOGIN_FAILED);
    return { user, token: await this.#signInChecked(user) };
  }

  /** Revokes the caller's own session (its token stops working everywhere). */
  async logout(principal: Principal): Promise<void> {
    if (principal.userId && principal.sessionId && this.deps.sessions) await this.deps.sessions.revoke(principal.userId, principal.sessionId);
  }

  /**
   * Revokes every session of the caller's account, this one included, and every API key (a key
   * made with a stolen session must not outlive it); returns how many of each.
   */
  async logoutEverywhere(principal: Principal): Promise<{ sessions: number; apiKeys: number }> {
    const userId = requireLocalUser(principal);
    // Sessions first: from then on no key can be created with one of them (see ApiKeys.create).
    const sessions = this.deps.sessions ? await this.deps.sessions.revokeAll(userId) : 0;
    const apiKeys = await this.deps.apiKeys.revokeAll(userId);
    return { sessions, apiKeys };
  }

  /** Every other session and every API key is revoked; the caller gets a new token. */
  async changePassword(principal: Principal, current: string, next: string): Promise<{ user: User; token: string }> {
    const user = await this.#confirm(principal, current);
    await this.deps.store.updateUserPassword(user.id, await this.deps.hasher.hash(normalised(next)));
    if (this.deps.sessions) await this.deps.sessions.revokeAll(user.id);
    const apiKeys = await this.deps.apiKeys.revokeAll(user.id);
    this.deps.logger.info({ userId: user.id, apiKeys }, 'password changed; every session signed out and every API key revoked');
    return { user, token: await this.#signIn(user) };
  }

  /** Deletes the account and everything it owns; its running replies end first. */
  async deleteAccount(principal: Principal, password: string): Promise<void> {
    const user = await this.#confirm(principal, password);
    // No new turn of this user starts while the account goes: one would write messages and
    // memories after they were erased (its tokens still work until the sessions are revoked).
    const reopen = this.deps.turns.closeOwner(user.id);
    try {
      await this.deps.turns.abortOwner(user.id, 'deleted');
      for (const hook of this.#deletionHooks) {
        try {
          await hook(user.id);
        } catch (err) {
          this.deps.logger.error({ err, userId: user.id }, 'account deletion step failed; the account was kept');
          throw new AppError('INTERNAL', 'The account could not be deleted completely right now; nothing was deleted, try again shortly', {
            status: 503,
            details: { retryAfterSeconds: 30 },
          });
        }
      }
      if (this.deps.sessions) await this.deps.sessions.revokeAll(user.id);
      // A turn admitted just before the owner was closed may have begun since the first abort.
      await this.deps.turns.abortOwner(user.id, 'deleted');
      await this.deps.store.deleteUser(user.id);
      // Its writes, and a memory write that was under way with them, are gone from the store; the
      // hooks run once more for what they keep elsewhere (memories). The account is gone already:
      // a failure here is logged, not answered.
      for (const hook of this.#deletionHooks) {
        await hook(user.id).catch((err: unknown) => this.deps.logger.error({ err, userId: user.id }, 'account deleted; a final clean-up step failed'));
      }
      this.deps.logger.info({ userId: user.id }, 'account deleted');
    } finally {
      reopen();
    }
  }

  async #confirm(principal: Principal, password: string): Promise<User> {
    const userId = requireLocalUser(principal);
    await this.#throttle(`auth:account-user:${userId}`, this.deps.limits.perAccount, 'Too many password attempts; try again later');
    const user = await this.deps.store.findUserById(userId);
    if (!user) throw new AppError('UNAUTHORIZED', 'This account no longer exists');
    if (!(await this.#verify(password, user.passwordHash))) throw new AppError('UNAUTHORIZED', 'The password is not correct');
    return user;
  }

  /**
   * Signs in a user whose password was checked against `user` as read before the check. The
   * check takes tens of milliseconds, and the password may change or the account be deleted
   * meanwhile: both revoke every session, but the one opened here would come after them. So the
   * user is read again once the session is stored, and a session opened for a password that is
   * no longer the account's, or for an account that is gone, is revoked at once and the login
   * refused. (A deletion or password change that comes after that read revokes this session with
   * the others: the stores delete the account's sessions after the account itself.)
   */
  async #signInChecked(user: User): Promise<string> {
    let signedIn: { token: string; sessionId: string };
    try {
      signedIn = await this.#session(user);
    } catch (err) {
      // SQLite refuses a session for an account deleted meanwhile (a foreign key): not a server error.
      if (!(await this.#stillValid(user))) throw new AppError('UNAUTHORIZED', LOGIN_FAILED);
      throw err;
    }
    if (await this.#stillValid(user)) return signedIn.token;
    if (this.deps.sessions) await this.deps.sessions.revoke(user.id, signedIn.sessionId);
    throw new AppError('UNAUTHORIZED', LOGIN_FAILED);
  }

  async #stillValid(user: User): Promise<boolean> {
    const now = await this.deps.store.findUserById(user.id);
    return now !== undefined && now.passwordHash === user.passwordHash;
  }

  async #signIn(user: User): Promise<string> {
    return (await this.#session(user)).token;
  }

  async #session(user: User): Promise<{ token: string; sessionId: string }> {
    const ttl = this.deps.tokens.ttlSeconds;
    const sessionId = this.deps.sessions ? (await this.deps.sessions.open(user.id, ttl)).id : crypto.randomUUID();
    return { token: await this.deps.tokens.issue(user, sessionId), sessionId };
  }

  /**
   * A password is checked in its NFC form, as it is hashed (the same password typed on a keyboard
   * that composes characters, or one that does not, is one password). A hash made before that
   * (from the password as typed) still matches it as typed.
   */
  async #verify(password: string, hash: string): Promise<boolean> {
    const nfc = normalised(password);
    if (await this.deps.hasher.verify(nfc, hash)) return true;
    return nfc !== password && this.deps.hasher.verify(password, hash);
  }

  async #throttle(key: string, limit: number, message: string): Promise<void> {
    const decision = await this.deps.limiter.consume(key, limit);
    // The HTTP error handler sets Retry-After and RateLimit-* from the details.
    if (!decision.allowed) throw new AppError('RATE_LIMIT', message, { details: { rateLimit: decision } });
  }

  #decoyHash(): Promise<string> {
    this.#decoy ??= this.deps.hasher.hash(crypto.randomUUID());
    return this.#decoy;
  }
}

/** Unicode NFC (NIST SP 800-63B 5.1.1.2: passwords are normalised before they are hashed). */
function normalised(password: string): string {
  return password.normalize('NFC');
}

function requireLocalUser(principal: Principal): string {
  if (!principal.userId) throw new AppError('UNAUTHORIZED', 'Sign in to manage your account');
  if (principal.userId.startsWith('ext:')) throw new AppError('BAD_REQUEST', 'This account is managed by your identity provider', { status: 403 });
  return principal.userId;
}

async function sha256(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  let hex = '';
  for (const b of digest.subarray(0, 16)) hex += b.toString(16).padStart(2, '0');
  return hex;
}
