"""The web side: WebSocket endpoints, /ws, the HTTP fallback, the upstream proxy, shipped files."""
