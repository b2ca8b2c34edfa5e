"""The flow that knows no channel: snapshot and digest, event log and its stores, throttle, hub, clients, protocol."""
