// A reader for NumPy .npy files (format versions 1-3) holding little-endian float32, C order.
// https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

// Returns {shape: [..], data: Float32Array}; throws Error naming what is unsupported.
export function parseNpy(buffer) {
  const bytes = new Uint8Array(buffer);
  if (!MAGIC.every((b, i) => bytes[i] === b)) throw new Error("not a .npy file");
  const major = bytes[6];
  const view = new DataView(buffer);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(start, start + headerLength),
  );
  const descr = /'descr':\s*'([^']+)'/.exec(header);
  if (!descr || (descr[1] !== "<f4" && descr[1] !== "=f4")) {
    throw new Error(`unsupported dtype ${descr ? descr[1] : "?"} (float32 little-endian only)`);
  }
  if (/'fortran_order':\s*True/.test(header)) throw new Error("Fortran-ordered arrays unsupported");
  const shapeText = /'shape':\s*\(([^)]*)\)/.exec(header);
  const shape = shapeText[1].split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  const offset = start + headerLength;
  const count = shape.reduce((a, b) => a * b, 1);
  const data = offset % 4 === 0
    ? new Float32Array(buffer, offset, count)
    : new Float32Array(buffer.slice(offset, offset + 4 * count));
  return { shape, data };
}

// One channel c of an H×W×C array as a Float32Array of H·W values, with its min and max.
export function channel(array, c) {
  const [h, w, channels] = array.shape;
  const out = new Float32Array(h * w);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < h * w; i++) {
    const v = array.data[i * channels + c];
    out[i] = v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return { values: out, height: h, width: w, min, max };
}
