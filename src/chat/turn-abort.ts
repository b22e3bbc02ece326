/**
 * Why a turn was cut short: the client asked (`stopped`), or it was `aborted`: the client
 * went away, or (`byServer`) the server is shutting down while the client is still there.
 */
export class TurnAbort extends Error {
  constructor(
    readonly kind: 'stopped' | 'aborted',
    readonly byServer = false,
  ) {
    super(kind === 'stopped' ? 'Stopped by the client' : byServer ? 'The server is shutting down' : 'Client went away');
    this.name = 'TurnAbort';
  }
}

export function abortKind(reason: unknown): 'stopped' | 'aborted' {
  return reason instanceof TurnAbort ? reason.kind : 'aborted';
}

export function abortedByServer(reason: unknown): boolean {
  return reason instanceof TurnAbort && reason.byServer;
}
