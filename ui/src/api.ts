// The one place the front end talks to the app's commands.

import { Channel, invoke } from "@tauri-apps/api/core";
import type {
  AppInfo,
  CatalogEntry,
  ChatEvent,
  ChatSettings,
  CommandError,
  Conversation,
  DownloadProgress,
  HubDraftView,
  HubFileView,
  HubRepoView,
  HubTokenStatus,
  LibraryUsage,
  Message,
  ModelDetails,
  ModelPair,
  ModelView,
  PairView,
  Placement,
  PlacementDecision,
  ProfileEvent,
  ProfileView,
  SearchHit,
  ServerSettings,
  ServerStatus,
} from "./types";

/** Turns whatever a command threw into a one-line error. */
export function toCommandError(err: unknown): CommandError {
  if (err && typeof err === "object" && "message" in err) {
    const e = err as { kind?: unknown; message: unknown };
    const kind = typeof e.kind === "string" ? e.kind : "internal";
    return { kind: kind as CommandError["kind"], message: oneLine(String(e.message)) };
  }
  return { kind: "internal", message: oneLine(String(err)) };
}

export function oneLine(text: string): string {
  const line = text.replace(/\s+/g, " ").trim();
  return line.length > 400 ? `${line.slice(0, 399)}…` : line || "Something went wrong.";
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (err) {
    throw toCommandError(err);
  }
}

function channel<T>(onEvent: (event: T) => void): Channel<T> {
  const ch = new Channel<T>();
  ch.onmessage = onEvent;
  return ch;
}

export const api = {
  appInfo: () => call<AppInfo>("app_info"),

  listConversations: () => call<Conversation[]>("list_conversations"),
  searchMessages: (query: string) => call<SearchHit[]>("search_messages", { query }),
  createConversation: (title: string, target: string | null, draft: string | null) =>
    call<Conversation>("create_conversation", { title, target, draft }),
  renameConversation: (id: number, title: string) =>
    call<void>("rename_conversation", { id, title }),
  setConversationModels: (id: number, pair: ModelPair) =>
    call<Conversation>("set_conversation_models", { id, pair }),
  placementPreview: (pair: ModelPair, placement: Placement) =>
    call<PlacementDecision | null>("placement_preview", { pair, placement }),
  deleteConversation: (id: number) => call<void>("delete_conversation", { id }),
  messages: (conversation: number) => call<Message[]>("conversation_messages", { conversation }),
  addUserMessage: (conversation: number, parent: number | null, content: string) =>
    call<Message>("add_user_message", { conversation, parent, content }),
  generate: (
    conversation: number,
    parent: number,
    settings: ChatSettings,
    onEvent: (e: ChatEvent) => void,
  ) => call<Message>("generate_reply", { conversation, parent, settings, onEvent: channel(onEvent) }),
  stopGeneration: () => call<void>("stop_generation"),
  restartWorker: () => call<void>("restart_worker"),
  loadSettings: () => call<ChatSettings>("load_settings"),
  saveSettings: (settings: ChatSettings) => call<void>("save_settings", { settings }),
  getModelPair: () => call<ModelPair>("get_model_pair"),
  setModelPair: (pair: ModelPair) => call<ModelPair>("set_model_pair", { pair }),

  listModels: () => call<ModelView[]>("list_models"),
  libraryUsage: () => call<LibraryUsage>("library_usage"),
  importModel: (path: string) => call<ModelView>("import_model", { path }),
  scanModels: () => call<ModelView[]>("scan_models"),
  removeModel: (id: string, deleteFile: boolean) =>
    call<void>("remove_model", { id, deleteFile }),
  inspectModel: (id: string) => call<ModelDetails>("inspect_model", { id }),
  pairings: (target: string) => call<PairView[]>("model_pairings", { target }),
  catalog: () => call<CatalogEntry[]>("model_catalog"),
  download: (source: string, sha256: string | null, onEvent: (e: DownloadProgress) => void) =>
    call<ModelView>("download_model", { source, sha256, onEvent: channel(onEvent) }),
  cancelDownload: () => call<void>("cancel_download"),
  hubSearch: (query: string) => call<HubRepoView[]>("hub_search", { query }),
  hubFiles: (repo: string, revision: string | null) => call<HubFileView[]>("hub_files", { repo, revision }),
  hubDrafts: (source: string) => call<HubDraftView[]>("hub_drafts", { source }),
  hubTokenStatus: () => call<HubTokenStatus>("hub_token_status"),
  setHubToken: (token: string | null) => call<HubTokenStatus>("set_hub_token", { token }),

  latestProfile: () => call<ProfileView | null>("latest_profile"),
  runProfile: (
    quick: boolean,
    target: string | null,
    draft: string | null,
    placement: Placement | null,
    onEvent: (e: ProfileEvent) => void,
  ) => call<ProfileView>("run_profile", { quick, target, draft, placement, onEvent: channel(onEvent) }),
  cancelProfile: () => call<void>("cancel_profile"),

  serverStatus: () => call<ServerStatus>("server_status"),
  setServer: (settings: ServerSettings) => call<ServerStatus>("set_server", { settings }),
};
