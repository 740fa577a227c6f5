// The status bar item: model state and the last completion's latency, from `fimble/status`.

export interface ServerStatus {
  model?: string;
  backend?: string;
  state?: string;
  loadMs?: number | null;
  requests?: { outcome: string; ms: number; error?: string; why?: string }[];
}

export interface StatusView {
  text: string;
  tooltip: string;
  error: boolean;
}

/** What the item shows for a status answer (undefined: the server is not running). */
export function statusView(status: ServerStatus | undefined, lastLatencyMs?: number): StatusView {
  if (!status) {
    return { text: "$(circle-slash) fimble", tooltip: "fimble: the server is not running", error: true };
  }
  const state = status.state ?? "unknown";
  const model = `${status.model ?? "?"} on ${status.backend ?? "?"}`;
  if (state === "loading" || state === "not loaded") {
    return { text: "$(loading~spin) fimble", tooltip: `fimble: loading ${model}`, error: false };
  }
  if (state === "error") {
    const last = status.requests?.at(-1)?.error;
    return { text: "$(error) fimble", tooltip: `fimble: ${model} failed to load${last ? `: ${last}` : ""}`, error: true };
  }
  const latency = lastLatencyMs === undefined ? "" : ` ${Math.round(lastLatencyMs)} ms`;
  const last = status.requests?.at(-1);
  const outcome = last ? `\nlast request: ${last.outcome}${last.why ? ` (${last.why})` : ""}` : "";
  return { text: `$(sparkle) fimble${latency}`, tooltip: `fimble: ${model} ${state}${outcome}`, error: false };
}
