/** Who is asking. Identity comes only from a verified token; the IP keys anonymous rate limits. */
export interface Principal {
  userId: string | null;
  ip: string;
}

export const isAnonymous = (p: Principal): boolean => p.userId === null;
