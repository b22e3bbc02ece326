/** Small DOM helpers: no framework, text only (nothing from the server is ever parsed as HTML). */

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from index.html`);
  return el as T;
}

type Attributes = Record<string, string | number | boolean | undefined>;

/** `h('button', {type: 'button', 'aria-label': 'Delete'}, 'Delete')`. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Attributes = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    el.setAttribute(name, value === true ? '' : String(value));
  }
  el.append(...children);
  return el;
}

/**
 * A destructive button that asks once more: the first click turns it into "Confirm …" for a
 * few seconds, the second runs the action.
 */
export function confirmingButton(label: string, accessibleName: string, action: () => unknown): HTMLButtonElement {
  const button = h('button', { type: 'button', 'aria-label': accessibleName }, label);
  let armed: ReturnType<typeof setTimeout> | undefined;
  const disarm = () => {
    clearTimeout(armed);
    armed = undefined;
    button.textContent = label;
    button.setAttribute('aria-label', accessibleName);
  };
  button.addEventListener('click', () => {
    if (armed === undefined) {
      button.textContent = `Confirm ${label.toLowerCase()}`;
      button.setAttribute('aria-label', `Confirm ${accessibleName.charAt(0).toLowerCase()}${accessibleName.slice(1)}`);
      armed = setTimeout(disarm, 4_000);
      return;
    }
    disarm();
    void action();
  });
  return button;
}

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '—' : date.toLocaleString();
}

export function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
