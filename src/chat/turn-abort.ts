/** Why a turn was cut short: the client asked (`stopped`) or went away / the server is stopping (`aborted`). */
export class TurnAbort extends Error {
  constructor(readonly kind: 'stopped' | 'aborted') {
    super(kind === 'stopped' ? 'Stopped by the client' : 'Client went away');
    this.name = 'TurnAbort';
  }
}

export function abortKind(reason: unknown): 'stopped' | 'aborted' {
  return reason instanceof TurnAbort ? reason.kind : 'aborted';
}
