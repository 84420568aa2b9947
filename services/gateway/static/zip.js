"use strict";
/* A small zip reader/writer for the browser, no dependencies.
 * Reads only the central directory of the chosen File (slices, never the whole file), then
 * builds a new zip of the few members that matter by copying their compressed bytes as File
 * slices: a 5 GB archive becomes a Blob of a few MB without being read or inflated.
 * Handles zip64 (archives over 4 GB) and archives nested under one top folder. */
const HqxZip = (() => {
  const KEEP = /^(?:[^/]+\/)?data\/(manifest|account|follower[^/]*|following[^/]*)\.js$/;
  const u16 = (b, o) => b[o] | (b[o + 1] << 8);
  const u32 = (b, o) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
  const u64 = (b, o) => u32(b, o) + u32(b, o + 4) * 0x100000000;
  const fail = (code) => { const e = new Error(code); e.code = code; throw e; };
  async function bytes(file, start, end) {
    return new Uint8Array(await file.slice(start, end).arrayBuffer());
  }

  async function entries(file) {
    if (file.size < 22) fail("not_a_zip");
    const tailStart = Math.max(0, file.size - (65557 + 20));
    const tail = await bytes(file, tailStart, file.size);
    let eocd = -1;
    for (let i = tail.length - 22; i >= 0; i--) {
      if (u32(tail, i) === 0x06054b50 && i + 22 + u16(tail, i + 20) === tail.length) { eocd = i; break; }
    }
    if (eocd < 0) fail("not_a_zip");
    let count = u16(tail, eocd + 10), cdSize = u32(tail, eocd + 12), cdOffset = u32(tail, eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const loc = eocd - 20;
      if (loc < 0 || u32(tail, loc) !== 0x07064b50) fail("not_a_zip");
      const at = u64(tail, loc + 8);
      const z = await bytes(file, at, at + 56);
      if (u32(z, 0) !== 0x06064b50) fail("not_a_zip");
      count = u64(z, 32); cdSize = u64(z, 40); cdOffset = u64(z, 48);
    }
    if (cdSize > 512 * 1024 * 1024 || cdOffset + cdSize > file.size) fail("not_a_zip");
    const cd = await bytes(file, cdOffset, cdOffset + cdSize);
    const out = [];
    let p = 0;
    for (let n = 0; n < count && p + 46 <= cd.length; n++) {
      if (u32(cd, p) !== 0x02014b50) fail("not_a_zip");
      const e = {
        flags: u16(cd, p + 8), method: u16(cd, p + 10), time: u16(cd, p + 12), date: u16(cd, p + 14),
        crc: u32(cd, p + 16), csize: u32(cd, p + 20), usize: u32(cd, p + 24), offset: u32(cd, p + 42),
      };
      const nl = u16(cd, p + 28), xl = u16(cd, p + 30), cl = u16(cd, p + 32);
      e.nameBytes = cd.slice(p + 46, p + 46 + nl);
      e.name = new TextDecoder().decode(e.nameBytes);
      let x = p + 46 + nl;
      const xend = x + xl;
      while (x + 4 <= xend) {  // zip64 extra field: only the fields that overflowed, in order
        const id = u16(cd, x), size = u16(cd, x + 2);
        if (id === 1) {
          let q = x + 4;
          if (e.usize === 0xffffffff) { e.usize = u64(cd, q); q += 8; }
          if (e.csize === 0xffffffff) { e.csize = u64(cd, q); q += 8; }
          if (e.offset === 0xffffffff) { e.offset = u64(cd, q); q += 8; }
        }
        x += 4 + size;
      }
      out.push(e);
      p = xend + cl;
    }
    return out;
  }

  function header(sig, e, offset) {
    const central = sig === 0x02014b50;
    const b = new Uint8Array((central ? 46 : 30) + e.nameBytes.length);
    const v = new DataView(b.buffer);
    let o = 0;
    const w16 = (n) => { v.setUint16(o, n, true); o += 2; };
    const w32 = (n) => { v.setUint32(o, n, true); o += 4; };
    w32(sig);
    if (central) w16(20);
    w16(20); w16(e.flags & ~0x8); w16(e.method); w16(e.time); w16(e.date);
    w32(e.crc); w32(e.csize); w32(e.usize); w16(e.nameBytes.length); w16(0);
    if (central) { w16(0); w16(0); w16(0); w32(0); w32(offset); }
    b.set(e.nameBytes, o);
    return b;
  }

  function end(count, cdSize, cdOffset) {
    const b = new Uint8Array(22), v = new DataView(b.buffer);
    v.setUint32(0, 0x06054b50, true); v.setUint16(8, count, true); v.setUint16(10, count, true);
    v.setUint32(12, cdSize, true); v.setUint32(16, cdOffset, true);
    return b;
  }

  async function dataStart(file, e) {
    const lh = await bytes(file, e.offset, e.offset + 30);
    if (u32(lh, 0) !== 0x04034b50) fail("not_a_zip");
    return e.offset + 30 + u16(lh, 26) + u16(lh, 28);
  }

  /* The small zip: {blob, kept: [names]}; throws Error(code) for files that are not archives. */
  async function slim(file) {
    const kept = (await entries(file)).filter((e) => !e.name.startsWith("__MACOSX/") && KEEP.test(e.name));
    if (!kept.some((e) => /follow/.test(e.name))) fail("graph_missing");
    const parts = [], central = [];
    let offset = 0;
    for (const e of kept) {
      if (e.csize > 0xfffffffe || e.usize > 0xfffffffe) fail("too_large");
      const start = await dataStart(file, e);
      const h = header(0x04034b50, e, 0);
      parts.push(h, file.slice(start, start + e.csize));
      central.push(header(0x02014b50, e, offset));
      offset += h.length + e.csize;
    }
    const cdSize = central.reduce((s, c) => s + c.length, 0);
    parts.push(...central, end(kept.length, cdSize, offset));
    return { blob: new Blob(parts, { type: "application/zip" }), kept: kept.map((e) => e.name), entries: kept };
  }

  /* One member's text (small members only: account.js), inflated with DecompressionStream. */
  async function text(file, e) {
    const start = await dataStart(file, e);
    let stream = file.slice(start, start + e.csize).stream();
    if (e.method === 8) stream = stream.pipeThrough(new DecompressionStream("deflate-raw"));
    else if (e.method !== 0) fail("not_a_zip");
    return await new Response(stream).text();
  }

  return { entries, slim, text };
})();
