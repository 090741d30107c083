import { parentPort } from 'node:worker_threads';
import { scanBlock } from './verify-scan.js';

/** Worker half of verify's fast path: scans blocks of lines in shared memory and posts back what it found. */
interface ScanRequest {
  id: number;
  /** Transferred to this thread and back, never copied. */
  memory: ArrayBuffer;
  end: number;
}

parentPort?.on('message', (request: ScanRequest) => {
  const result = scanBlock(Buffer.from(request.memory), 0, request.end);
  parentPort?.postMessage({ ...request, result }, [request.memory]);
});
