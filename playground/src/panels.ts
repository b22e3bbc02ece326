/** The side panels that manage a signed-in user's data: long-term memory and API keys. */
import { asGatewayError, requestJson } from './api.js';
import { byId, confirmingButton, formatTime, h, shorten } from './dom.js';

export interface PanelContext {
  token(): string | null;
  signedIn(): boolean;
  report(error: unknown): void;
}

interface Memory {
  id: string;
  conversationId: string;
  role: string;
  text: string;
  createdAt: string;
}

/** `/api/v2/memory`: list, forget one, erase all, opt out. */
export class MemoryPanel {
  private readonly list = byId<HTMLUListElement>('memories');
  private readonly enabled = byId<HTMLInputElement>('memory-enabled');
  private readonly panel = byId<HTMLDetailsElement>('memory-panel');

  constructor(private readonly ctx: PanelContext) {
    this.panel.addEventListener('toggle', () => {
      if (this.panel.open) void this.load();
    });
    byId('memory-refresh').addEventListener('click', () => void this.load());
    byId('memory-erase').replaceWith(
      Object.assign(confirmingButton('Erase all memories', 'Erase all memories', () => this.eraseAll()), { id: 'memory-erase' }),
    );
    this.enabled.addEventListener('change', () => void this.setEnabled(this.enabled.checked));
  }

  async load(): Promise<void> {
    if (!this.panel.open) return;
    if (!this.ctx.signedIn()) {
      this.list.replaceChildren(h('li', { class: 'muted' }, 'Sign in to see what the gateway remembers of you.'));
      return;
    }
    try {
      const page = await requestJson<{ memories: Memory[]; enabled: boolean }>('/api/v2/memory?limit=100', { token: this.ctx.token() });
      this.enabled.checked = page.enabled;
      this.list.replaceChildren(...(page.memories.length ? page.memories.map((m) => this.item(m)) : [h('li', { class: 'muted' }, 'Nothing remembered yet.')]));
    } catch (err) {
      this.ctx.report(err);
    }
  }

  private item(m: Memory): HTMLLIElement {
    const forget = h('button', { type: 'button', 'aria-label': `Forget memory: ${shorten(m.text, 60)}` }, 'Forget');
    forget.addEventListener('click', async () => {
      try {
        await requestJson(`/api/v2/memory/${encodeURIComponent(m.id)}`, { method: 'DELETE', token: this.ctx.token() });
        await this.load();
      } catch (err) {
        this.ctx.report(err);
      }
    });
    const text = h('div', { class: 'grow' }, h('div', { class: 'memory-text' }, shorten(m.text, 240)), h('div', { class: 'small' }, `${m.role} · ${formatTime(m.createdAt)}`));
    return h('li', { 'data-memory-id': m.id }, text, forget);
  }

  private async eraseAll(): Promise<void> {
    try {
      await requestJson('/api/v2/memory', { method: 'DELETE', token: this.ctx.token() });
      await this.load();
    } catch (err) {
      this.ctx.report(err);
    }
  }

  private async setEnabled(enabled: boolean): Promise<void> {
    try {
      const answer = await requestJson<{ enabled: boolean }>('/api/v2/memory/settings', { method: 'PUT', body: { enabled }, token: this.ctx.token() });
      this.enabled.checked = answer.enabled;
    } catch (err) {
      this.enabled.checked = !enabled;
      this.ctx.report(err);
    }
  }
}

interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  models: string[] | null;
  rateLimitPerMinute: number | null;
  createdAt: string;
  expiresAt: string | null;
  lastUsedAt: string | null;
}

/** `/api/v2/keys`: create (the secret is shown once), list, revoke. */
export class KeysPanel {
  private readonly list = byId<HTMLUListElement>('keys');
  private readonly panel = byId<HTMLDetailsElement>('keys-panel');
  private readonly form = byId<HTMLFormElement>('key-form');
  private readonly created = byId('new-key');
  private readonly createdValue = byId<HTMLOutputElement>('new-key-value');
  /** The key whose secret is on screen. */
  private shownKeyId: string | undefined;

  constructor(private readonly ctx: PanelContext) {
    this.panel.addEventListener('toggle', () => {
      if (this.panel.open) void this.load();
    });
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.create();
    });
    byId('new-key-copy').addEventListener('click', () => {
      void navigator.clipboard?.writeText(this.createdValue.value).catch((err: unknown) => this.ctx.report(asGatewayError(err)));
    });
  }

  /** Forgets a shown secret (sign-out, another user). */
  reset(): void {
    this.hideSecret();
    this.list.replaceChildren();
  }

  private hideSecret(): void {
    this.created.hidden = true;
    this.createdValue.value = '';
    this.shownKeyId = undefined;
  }

  async load(): Promise<void> {
    if (!this.panel.open) return;
    if (!this.ctx.signedIn()) {
      this.list.replaceChildren(h('li', { class: 'muted' }, 'Sign in to manage API keys.'));
      return;
    }
    try {
      const { keys } = await requestJson<{ keys: ApiKey[] }>('/api/v2/keys', { token: this.ctx.token() });
      this.list.replaceChildren(...(keys.length ? keys.map((k) => this.item(k)) : [h('li', { class: 'muted' }, 'No keys yet.')]));
    } catch (err) {
      this.ctx.report(err);
    }
  }

  private async create(): Promise<void> {
    const data = new FormData(this.form);
    const text = (name: string) => String(data.get(name) ?? '').trim();
    const models = text('models')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean);
    const body = {
      name: text('name'),
      ...(models.length ? { models } : {}),
      ...(text('rate') ? { rateLimitPerMinute: Number(text('rate')) } : {}),
      ...(text('expiry') ? { expiresInDays: Number(text('expiry')) } : {}),
    };
    try {
      const answer = await requestJson<ApiKey & { key: string }>('/api/v2/keys', { body, token: this.ctx.token() });
      this.createdValue.value = answer.key;
      this.created.hidden = false;
      this.shownKeyId = answer.id;
      this.form.reset();
      await this.load();
    } catch (err) {
      this.ctx.report(err);
    }
  }

  private item(k: ApiKey): HTMLLIElement {
    const revoke = confirmingButton('Revoke', `Revoke key ${k.name}`, async () => {
      try {
        await requestJson(`/api/v2/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE', token: this.ctx.token() });
        if (k.id === this.shownKeyId) this.hideSecret();
        await this.load();
      } catch (err) {
        this.ctx.report(err);
      }
    });
    const limits = [k.models ? `models: ${k.models.join(', ')}` : 'every model', k.rateLimitPerMinute ? `${k.rateLimitPerMinute}/min` : null, k.expiresAt ? `expires ${formatTime(k.expiresAt)}` : null]
      .filter(Boolean)
      .join(' · ');
    const text = h(
      'div',
      { class: 'grow' },
      h('div', {}, h('strong', {}, k.name), ` ${k.prefix}…`),
      h('div', { class: 'small' }, limits),
      h('div', { class: 'small' }, `created ${formatTime(k.createdAt)} · last used ${formatTime(k.lastUsedAt)}`),
    );
    return h('li', { 'data-key-id': k.id }, text, revoke);
  }
}
