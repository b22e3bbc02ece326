/**
 * The playground page: account, conversations, streamed chat over a chosen protocol, model
 * picker, memories, API keys and a voice turn, all against the gateway that serves the page.
 */
import { asGatewayError, requestJson, type GatewayError } from './api.js';
import { createTransport, PROTOCOLS, type ChatTransport, type Protocol, type RunningTurn, type TurnEnd, type Usage } from './chat-transports.js';
import { byId, confirmingButton, h } from './dom.js';
import { KeysPanel, MemoryPanel } from './panels.js';
import { VoiceSession } from './voice.js';

interface User {
  id: string;
  email: string | null;
  name: string | null;
}

interface Conversation {
  id: string;
  title: string | null;
  updatedAt: string;
}

interface StoredMessage {
  id: string;
  role: 'user' | 'assistant' | 'system';
  content: string;
  model?: string;
  finishReason?: string;
  usage?: Usage;
}

const TOKEN_KEY = 'playground.token';
const PROTOCOL_KEY = 'playground.protocol';
const MODEL_KEY = 'playground.model';
/** Pages of 200 read when a conversation is opened (its newest messages may be on the last). */
const MAX_MESSAGE_PAGES = 10;

const state = {
  /** Kept for this tab only, so a reload stays signed in; the httpOnly cookie serves the rest. */
  token: sessionStorage.getItem(TOKEN_KEY),
  user: null as User | null,
  conversationId: conversationFromHash(),
  conversations: [] as Conversation[],
  running: null as RunningTurn | null,
  transports: new Map<Protocol, ChatTransport>(),
};

const ui = {
  error: byId('error'),
  authForm: byId<HTMLFormElement>('auth-form'),
  signedIn: byId('signed-in'),
  userEmail: byId('user-email'),
  protocol: byId<HTMLSelectElement>('protocol'),
  model: byId<HTMLSelectElement>('model'),
  title: byId('conversation-title'),
  messages: byId('messages'),
  composer: byId<HTMLFormElement>('composer'),
  input: byId<HTMLTextAreaElement>('message'),
  send: byId<HTMLButtonElement>('send'),
  stop: byId<HTMLButtonElement>('stop'),
  voice: byId<HTMLButtonElement>('voice'),
  voiceStatus: byId('voice-status'),
  voiceLog: byId('voice-log'),
  conversations: byId<HTMLUListElement>('conversations'),
  conversationsHint: byId('conversations-hint'),
};

// ---- errors ------------------------------------------------------------------------------

function report(err: unknown): void {
  const e = asGatewayError(err);
  ui.error.textContent = `${e.code}: ${e.message}`;
  ui.error.hidden = false;
}

function clearError(): void {
  ui.error.hidden = true;
  ui.error.textContent = '';
}

const panelContext = { token: () => state.token, signedIn: () => state.user !== null, report };
const memoryPanel = new MemoryPanel(panelContext);
const keysPanel = new KeysPanel(panelContext);

// ---- account -----------------------------------------------------------------------------

/** Counts explicit sign-ins and sign-outs, so a slower session check cannot undo one. */
let authChanges = 0;

async function restoreSession(): Promise<void> {
  const before = authChanges;
  let user: User | null = null;
  try {
    // With no token kept, the httpOnly cookie may still sign this browser in.
    user = (await requestJson<{ user: User }>('/api/v2/auth/me', { token: state.token })).user;
  } catch (err) {
    const e = asGatewayError(err);
    if (e.code !== 'UNAUTHORIZED') report(e);
    // A dead token in the httpOnly cookie (signed out elsewhere, another server on this host)
    // would be refused on every request, anonymous ones too: only the server can clear it.
    else if (authChanges === before) await requestJson('/api/v2/auth/logout', { method: 'POST' }).catch(() => undefined);
  }
  if (authChanges === before) setUser(user, user ? state.token : null);
}

function setUser(user: User | null, token: string | null): void {
  const changed = state.token !== token || state.user?.id !== user?.id;
  state.user = user;
  state.token = token;
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
  ui.authForm.hidden = user !== null;
  ui.signedIn.hidden = user === null;
  ui.userEmail.textContent = user?.email ?? user?.id ?? '';
  ui.conversationsHint.hidden = user !== null;
  if (changed) {
    // Socket.IO connections carry the token from their handshake: new identity, new connections.
    for (const transport of state.transports.values()) transport.close();
    state.transports.clear();
    voice.close();
    keysPanel.reset();
  }
  void loadModels();
  void loadConversations();
  void memoryPanel.load();
  void keysPanel.load();
}

ui.authForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  clearError();
  const action = (event.submitter as HTMLButtonElement | null)?.value === 'register' ? 'register' : 'login';
  const data = new FormData(ui.authForm);
  const name = String(data.get('name') ?? '').trim();
  const body = { email: String(data.get('email') ?? ''), password: String(data.get('password') ?? ''), ...(action === 'register' && name ? { name } : {}) };
  try {
    const answer = await requestJson<{ user: User; token: string }>(`/api/v2/auth/${action}`, { body });
    ui.authForm.reset();
    authChanges++;
    setUser(answer.user, answer.token);
    if (state.conversationId) void openConversation(state.conversationId);
  } catch (err) {
    report(err);
  }
});

byId('sign-out').addEventListener('click', async () => {
  clearError();
  try {
    await requestJson('/api/v2/auth/logout', { method: 'POST', token: state.token });
  } catch (err) {
    report(err);
  }
  authChanges++;
  setUser(null, null);
  newChat();
});

// ---- models ------------------------------------------------------------------------------

async function loadModels(): Promise<void> {
  const wanted = localStorage.getItem(MODEL_KEY) ?? '';
  const options = [h('option', { value: '' }, 'Server default')];
  try {
    const { data } = await requestJson<{ data: { id: string; owned_by: string }[] }>('/v1/models', { token: state.token });
    for (const m of data) options.push(h('option', { value: m.id }, `${m.id} (${m.owned_by})`));
    ui.model.title = '';
  } catch (err) {
    // /v1 needs a token: anonymous users chat with the server's default model.
    ui.model.title = asGatewayError(err).code === 'UNAUTHORIZED' ? 'Sign in to choose a model' : asGatewayError(err).message;
  }
  ui.model.replaceChildren(...options);
  ui.model.value = options.some((o) => o.value === wanted) ? wanted : '';
}

ui.model.addEventListener('change', () => localStorage.setItem(MODEL_KEY, ui.model.value));

// ---- protocol ----------------------------------------------------------------------------

const savedProtocol = localStorage.getItem(PROTOCOL_KEY);
if (savedProtocol && (PROTOCOLS as readonly string[]).includes(savedProtocol)) ui.protocol.value = savedProtocol;
ui.protocol.addEventListener('change', () => localStorage.setItem(PROTOCOL_KEY, ui.protocol.value));

function transport(protocol: Protocol): ChatTransport {
  let t = state.transports.get(protocol);
  if (!t) state.transports.set(protocol, (t = createTransport(protocol)));
  return t;
}

// ---- conversations -----------------------------------------------------------------------

function conversationFromHash(): string | null {
  const match = /^#\/c\/([A-Za-z0-9_-]{1,128})$/.exec(location.hash);
  return match?.[1] ?? null;
}

function setConversation(id: string | null): void {
  state.conversationId = id;
  history.replaceState(null, '', id ? `#/c/${id}` : location.pathname);
  const known = state.conversations.find((c) => c.id === id);
  ui.title.textContent = id ? (known?.title ?? 'Untitled conversation') : 'New conversation';
  renderConversations();
}

async function loadConversations(): Promise<void> {
  if (!state.user) {
    state.conversations = [];
    renderConversations();
    return;
  }
  try {
    const page = await requestJson<{ conversations: Conversation[] }>('/api/v2/conversations?limit=100', { token: state.token });
    state.conversations = page.conversations;
    renderConversations();
    const current = state.conversations.find((c) => c.id === state.conversationId);
    if (current) ui.title.textContent = current.title ?? 'Untitled conversation';
  } catch (err) {
    report(err);
  }
}

function renderConversations(): void {
  ui.conversations.replaceChildren(...state.conversations.map(conversationItem));
}

function conversationItem(c: Conversation): HTMLLIElement {
  const title = c.title ?? 'Untitled conversation';
  const li = h('li', { class: c.id === state.conversationId ? 'current' : undefined, 'data-conversation-id': c.id });
  const open = h('button', { type: 'button', class: 'open', 'aria-current': c.id === state.conversationId ? 'true' : undefined, title }, title);
  open.addEventListener('click', () => void openConversation(c.id));
  const rename = h('button', { type: 'button', 'aria-label': `Rename ${title}` }, 'Rename');
  rename.addEventListener('click', () => li.replaceChildren(renameForm(c, li)));
  const remove = confirmingButton('Delete', `Delete ${title}`, () => deleteConversation(c.id));
  li.append(open, rename, remove);
  return li;
}

function renameForm(c: Conversation, li: HTMLLIElement): HTMLFormElement {
  const input = h('input', { 'aria-label': 'New title', value: c.title ?? '', maxlength: 200, required: true });
  const form = h('form', {}, input, h('button', { type: 'submit' }, 'Save'), h('button', { type: 'button', class: 'cancel' }, 'Cancel'));
  form.querySelector('.cancel')!.addEventListener('click', () => li.replaceWith(conversationItem(c)));
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    try {
      await requestJson(`/api/v2/conversations/${encodeURIComponent(c.id)}`, { method: 'PATCH', body: { title: input.value }, token: state.token });
      await loadConversations();
    } catch (err) {
      report(err);
    }
  });
  queueMicrotask(() => input.focus());
  return form;
}

async function deleteConversation(id: string): Promise<void> {
  try {
    await requestJson(`/api/v2/conversations/${encodeURIComponent(id)}`, { method: 'DELETE', token: state.token });
    if (id === state.conversationId) newChat();
    await loadConversations();
    void memoryPanel.load();
  } catch (err) {
    report(err);
  }
}

/** Reads every page of a conversation (oldest first): signed in from /api/v2/conversations, anonymous from /api/chat. */
async function storedMessages(id: string): Promise<StoredMessage[]> {
  if (!state.user) {
    type UiMessage = { id: string; role: StoredMessage['role']; parts: { type: string; text?: string }[]; metadata?: Omit<StoredMessage, 'id' | 'role' | 'content'> };
    const messages = await requestJson<UiMessage[]>(`/api/chat/${encodeURIComponent(id)}/messages`, { token: state.token });
    return messages.map((m) => ({ id: m.id, role: m.role, content: m.parts.map((p) => p.text ?? '').join(''), ...m.metadata }));
  }
  const all: StoredMessage[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < MAX_MESSAGE_PAGES; page++) {
    const query: string = cursor ? `&cursor=${encodeURIComponent(cursor)}` : '';
    const answer: { messages: StoredMessage[]; nextCursor: string | null } = await requestJson(`/api/v2/conversations/${encodeURIComponent(id)}/messages?limit=200${query}`, {
      token: state.token,
    });
    all.push(...answer.messages);
    cursor = answer.nextCursor;
    if (!cursor) break;
  }
  return all;
}

async function openConversation(id: string): Promise<void> {
  if (state.running) return;
  clearError();
  setConversation(id);
  ui.messages.replaceChildren();
  try {
    for (const m of await storedMessages(id)) {
      if (m.role === 'system') continue;
      const view = addMessage(m.role, m.content);
      if (m.role === 'assistant') view.meta.replaceChildren(...describe({ finishReason: m.finishReason ?? 'stop', messageId: m.id, usage: m.usage, model: m.model }));
    }
  } catch (err) {
    const e = asGatewayError(err);
    // A conversation that was never stored (a new chat's id, another browser's) opens empty.
    if (e.code !== 'NOT_FOUND') report(e);
  }
}

function newChat(): void {
  if (state.running) return;
  clearError();
  ui.messages.replaceChildren();
  setConversation(null);
  ui.input.focus();
}

byId('new-chat').addEventListener('click', newChat);

// ---- chat --------------------------------------------------------------------------------

interface MessageView {
  article: HTMLElement;
  text: HTMLElement;
  meta: HTMLElement;
}

function addMessage(role: 'user' | 'assistant', content: string): MessageView {
  const text = h('div', { class: 'text' }, content);
  const meta = h('div', { class: 'meta' });
  const article = h('article', { class: `msg ${role}`, 'data-role': role, 'aria-label': role === 'user' ? 'Your message' : 'Assistant reply' }, h('div', { class: 'who' }, role === 'user' ? 'You' : 'Assistant'), text, meta);
  ui.messages.append(article);
  ui.messages.scrollTop = ui.messages.scrollHeight;
  return { article, text, meta };
}

const PARTIAL: Record<string, string> = { stopped: 'stopped: partial reply kept', aborted: 'stream cut: partial reply kept', error: 'failed: partial reply kept', length: 'cut at the token limit' };

/** The reply's meta line: model, tokens, timing, how it ended. */
function describe(end: TurnEnd, timing?: { ttftMs: number | undefined; totalMs: number }): Node[] {
  const parts: Node[] = [];
  const add = (text: string, cls?: string) => {
    if (parts.length) parts.push(document.createTextNode(' · '));
    parts.push(h('span', { class: cls }, text));
  };
  if (end.model) add(end.model);
  if (end.usage) add(`${end.usage.inputTokens} in + ${end.usage.outputTokens} out tokens`, 'usage');
  else if (end.totalTokens !== undefined) add(`${end.totalTokens} tokens`, 'usage');
  if (timing) {
    add(timing.ttftMs === undefined ? 'no tokens' : `first token ${Math.round(timing.ttftMs)} ms`, 'ttft');
    add(`${(timing.totalMs / 1000).toFixed(1)} s`);
  }
  const partial = PARTIAL[end.finishReason];
  add(partial ?? end.finishReason, partial ? 'partial' : 'finish');
  return parts;
}

/** ai:chat reports no usage: the stored message has it (signed-in users can read it). */
async function withStoredUsage(end: TurnEnd, conversationId: string): Promise<TurnEnd> {
  if ((end.usage || end.totalTokens !== undefined) && end.model) return end;
  if (!end.messageId || !state.user) return end;
  try {
    const stored = (await storedMessages(conversationId)).find((m) => m.id === end.messageId);
    return { ...end, usage: end.usage ?? stored?.usage, model: end.model ?? stored?.model };
  } catch {
    return end;
  }
}

function setRunning(turn: RunningTurn | null): void {
  state.running = turn;
  ui.send.disabled = turn !== null;
  ui.stop.disabled = turn === null;
  ui.protocol.disabled = turn !== null;
}

async function send(): Promise<void> {
  const message = ui.input.value.trim();
  if (!message || state.running) return;
  clearError();
  const conversationId = state.conversationId ?? crypto.randomUUID();
  if (conversationId !== state.conversationId) setConversation(conversationId);
  const protocol = ui.protocol.value as Protocol;
  const model = ui.model.value || undefined;
  ui.input.value = '';
  addMessage('user', message);
  const reply = addMessage('assistant', '');
  reply.article.classList.add('streaming');
  reply.article.dataset.protocol = protocol;
  const started = performance.now();
  let ttftMs: number | undefined;

  const turn = transport(protocol).run(
    { message, conversationId, model, token: state.token },
    {
      delta: (text) => {
        if (ttftMs === undefined) {
          ttftMs = performance.now() - started;
          reply.article.dataset.ttftMs = String(Math.round(ttftMs));
        }
        reply.text.append(text);
        ui.messages.scrollTop = ui.messages.scrollHeight;
      },
      end: (end) => {
        const timing = { ttftMs, totalMs: performance.now() - started };
        reply.article.dataset.finishReason = end.finishReason;
        reply.meta.replaceChildren(...describe({ ...end, model: end.model ?? model }, timing));
        void withStoredUsage(end, conversationId).then((full) => {
          if (full !== end) reply.meta.replaceChildren(...describe(full, timing));
        });
      },
      error: (error: GatewayError) => {
        reply.article.dataset.finishReason = 'error';
        reply.article.dataset.errorCode = error.code;
        reply.article.append(h('div', { class: 'failure', role: 'status' }, `${error.code}: ${error.message}`));
        report(error);
      },
    },
  );
  setRunning(turn);
  try {
    await turn.done;
  } finally {
    reply.article.classList.remove('streaming');
    setRunning(null);
    void loadConversations();
  }
}

ui.composer.addEventListener('submit', (event) => {
  event.preventDefault();
  void send();
});
ui.input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => state.running?.stop());

// ---- voice -------------------------------------------------------------------------------

let assistantLine: HTMLElement | undefined;
const voice = new VoiceSession({
  state: (s, detail) => {
    ui.voice.textContent = s === 'recording' ? 'Stop voice and send' : 'Start voice';
    ui.voice.setAttribute('aria-pressed', String(s === 'recording'));
    ui.voice.disabled = s === 'starting' || s === 'waiting';
    ui.voiceStatus.dataset.state = s;
    ui.voiceStatus.textContent = `Voice: ${detail}`;
    if (s === 'waiting') assistantLine = undefined;
  },
  transcript: (role, text, final) => {
    if (role === 'you') {
      ui.voiceLog.append(h('div', { class: 'line' }, `You: ${text}`));
      return;
    }
    if (!assistantLine) ui.voiceLog.append((assistantLine = h('div', { class: 'line', 'data-role': 'assistant' }, 'Assistant: ')));
    assistantLine.append(text);
    if (final) assistantLine = undefined;
  },
  stats: (s) => {
    ui.voiceStatus.dataset.sentBytes = String(s.sentBytes);
    ui.voiceStatus.dataset.receivedBytes = String(s.receivedBytes);
    ui.voiceStatus.dataset.playedMs = String(Math.round(s.playedMs));
    const sent = `sent ${(s.sentBytes / 1024).toFixed(1)} KiB`;
    const got = s.receivedBytes ? `, received ${(s.receivedBytes / 1024).toFixed(1)} KiB, played ${(s.playedMs / 1000).toFixed(2)} of ${(s.scheduledMs / 1000).toFixed(2)} s` : '';
    ui.voice.title = `${sent}${got}`;
    byId('voice-stats').textContent = `${sent}${got}`;
  },
  error: (error) => report(error),
});
ui.voiceStatus.after(h('p', { id: 'voice-stats', class: 'muted', 'aria-label': 'Voice audio' }));

ui.voice.addEventListener('click', () => {
  clearError();
  if (voice.state === 'recording') void voice.finish();
  else void voice.start(state.token);
});

window.addEventListener('pagehide', () => {
  voice.close();
  for (const t of state.transports.values()) t.close();
});

// ---- start -------------------------------------------------------------------------------

void (async () => {
  await restoreSession();
  if (state.conversationId) await openConversation(state.conversationId);
  else setConversation(null);
})();
