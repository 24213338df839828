/**
 * A TCP relay on loopback between a client and the real server, whose connections a test can cut: a lost
 * connection made for real, as a network fault or a load balancer would make it.
 */
import { connect, createServer, type Server, type Socket } from "node:net";

export interface Relay {
  /** `127.0.0.1:PORT` to give the client. */
  address: string;
  /** Connections accepted so far. */
  connections: () => number;
  /** Destroys every open connection (both sides). */
  cut: () => void;
  close: () => Promise<void>;
}

export async function relay(target: { host: string; port: number }): Promise<Relay> {
  const open = new Set<Socket>();
  let accepted = 0;
  const server: Server = createServer((downstream) => {
    accepted++;
    const upstream = connect(target.port, target.host);
    const pair = [downstream, upstream];
    const end = () => pair.forEach((s) => (s.destroy(), open.delete(s)));
    for (const s of pair) {
      open.add(s);
      s.on("error", end);
      s.on("close", end);
    }
    downstream.pipe(upstream);
    upstream.pipe(downstream);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as { port: number };
  return {
    address: `127.0.0.1:${port}`,
    connections: () => accepted,
    cut: () => open.forEach((s) => s.destroy()),
    close: () => new Promise<void>((r) => (open.forEach((s) => s.destroy()), server.close(() => r()))),
  };
}
