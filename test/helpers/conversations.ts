import { conversationKey, type Conversation, type ConversationStore, type StoredMessage } from '../../src/stores/conversation-store.js';
import type { TestGateway } from './gateway.js';

/** Who owns what an anonymous test client without the cookie creates: its loopback IP. */
export const LOOPBACK_OWNER = 'ip:127.0.0.1';

/** A gateway in this process, or one whose store the test opens itself (a gateway process's DATA_DIR). */
type Gateway = Pick<TestGateway, 'server'> | { readonly store: ConversationStore };

function storeOf(gw: Gateway): ConversationStore {
  return 'server' in gw ? gw.server.services.store : gw.store;
}

/** The owner's conversation with this public id, read straight from the gateway's store. */
export function conversationOf(gw: Gateway, id: string, owner = LOOPBACK_OWNER): Promise<Conversation | undefined> {
  return storeOf(gw).getConversation(owner, id);
}

/** The stored messages of the owner's conversation, oldest first. */
export async function messagesOf(gw: Gateway, id: string, owner = LOOPBACK_OWNER): Promise<StoredMessage[]> {
  return (await storeOf(gw).listMessages(conversationKey(owner, id), { limit: 200 })).items;
}
