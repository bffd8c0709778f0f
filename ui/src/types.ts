// The shapes the app's commands exchange are generated from the Rust types (bindings.ts);
// this file re-exports them and adds the few types only the front end uses.

export type {
  AppInfo, Bandwidth, CatalogEntry, ChatEvent, ChatSettings, CommandError, Conversation, ConversationId,
  DownloadProgress, ErrorKind, HubDraftView, HubFileView, HubRepoView, HubTokenStatus, Fact, GenerationStats, LibraryUsage, Message, MessageId, MessageStatus,
  MetadataEntryView, ModelDetails, ModelPair, ModelView, Node, PairView, Placement, PlacementDecision, Plan,
  LiveCheck, Point, ProfileEvent, ProfileView, ChatRole, Sampling, SearchHit, ServerSettings, ServerStatus, Source, Step,
} from "./bindings";

import type { ModelView } from "./bindings";

/** A model's fit on this machine; `null` (the file is missing) is shown as an unknown fit. */
export type Fit = NonNullable<ModelView["fit"]>;
