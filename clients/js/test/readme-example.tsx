// The README's React example ("Pointing a dashboard at it"), compiled by `npm test` so it stays true.
import { BroadcasterProvider, useADWMonitorWebSocket } from "../index.js";

function Agents() {
  const { workflows, summary, isConnected, connectionQuality } = useADWMonitorWebSocket();
  if (!isConnected && workflows.length === 0) return <p>Connecting…</p>;
  return (<div><p>{summary.running} running {connectionQuality === "good" ? "●" : "◐"}</p>
    <ul>{workflows.map((w) => <li key={w.adw_id}>{w.adw_id}: {w.status} {w.current_phase}</li>)}</ul></div>);
}
export const App = () => <BroadcasterProvider url="http://127.0.0.1:8002"><Agents /></BroadcasterProvider>;
