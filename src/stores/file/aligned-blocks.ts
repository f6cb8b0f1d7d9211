/**
 * Buffers whose memory starts on a page boundary, as writes with O_DIRECT need (the address,
 * the offset and the length must all be multiples of the device's logical block size; 4096
 * covers every device). Node gives no way to ask for aligned memory, but a WebAssembly memory
 * is mapped by whole pages, so a view of one at a multiple of 4096 is aligned.
 *
 * Blocks are carved from memories of BLOCKS_PER_MEMORY blocks and reused through a free list,
 * so a busy server maps a few memories once rather than one per write. A memory is never
 * grown: growing would detach the views already handed out.
 */
export const ALIGNMENT = 4096;

/** The part of WebAssembly used here (the TypeScript libraries in use do not declare it). */
declare const WebAssembly: {
  Memory: new (descriptor: { initial: number; maximum: number }) => { buffer: ArrayBuffer };
};

const WASM_PAGE = 64 * 1024;
const BLOCKS_PER_MEMORY = 8;
/** Free blocks kept for reuse, per block size; more are left to the garbage collector. */
const MAX_FREE = 32;

const free = new Map<number, Buffer[]>();

/** A block of `size` bytes (a multiple of ALIGNMENT) at an aligned address. */
export function takeAlignedBlock(size: number): Buffer {
  if (size % ALIGNMENT !== 0) throw new Error(`block size ${size} is not a multiple of 4096`);
  const list = free.get(size) ?? [];
  free.set(size, list);
  if (list.length === 0) list.push(...mapBlocks(size));
  return list.pop() as Buffer;
}

/** Hands a block back for reuse; it must not be used by the caller afterwards. */
export function releaseAlignedBlock(block: Buffer): void {
  const list = free.get(block.length);
  if (list && list.length < MAX_FREE) list.push(block);
}

function mapBlocks(size: number): Buffer[] {
  const pages = Math.ceil((size * BLOCKS_PER_MEMORY) / WASM_PAGE);
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  const blocks: Buffer[] = [];
  for (let index = 0; index < BLOCKS_PER_MEMORY; index++) {
    blocks.push(Buffer.from(memory.buffer, index * size, size));
  }
  return blocks;
}
