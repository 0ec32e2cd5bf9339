// Conv arithmetic from a layer-table row's own fields, spelled out with the numbers filled in:
//   output = floor((n + 2p − f_eff)/s) + 1,  f_eff = d·(f − 1) + 1
//   params = (f·f·c_in + 1)·filters
// The input size n and channels c_in come from the row before (or the model's input), so they
// are an inference for branching graphs; every result is checked against the row itself.

const WINDOWED = /^(Conv2D|DepthwiseConv2D|SeparableConv2D|MaxPooling2D|AveragePooling2D)$/;

// The row whose output feeds row `index` (the previous one with a shape at the same nesting
// level), or -1 when it is the model's input.
export function previousRow(rows, index) {
  for (let i = index - 1; i >= 0; i--) {
    const sameLevel = rows[i].name.includes("/") === rows[index].name.includes("/");
    if (rows[i].output_shape && sameLevel) return i;
  }
  return -1;
}

export function inputShapeOf(rows, index, modelInput) {
  const i = previousRow(rows, index);
  return i >= 0 ? rows[i].output_shape : modelInput;
}

// Zeros Keras adds before (above / left of) the input on one axis: n in, out out, kernel f,
// stride s, dilation d. null when "same" padding meets an unknown size.
export function padBefore(n, out, f, s, d, padding) {
  if (padding !== "same") return 0;
  if (n == null || out == null) return null;
  const fEff = d * (f - 1) + 1;
  return Math.floor(Math.max((out - 1) * s + fEff - n, 0) / 2);
}

const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toFixed(4).replace(/0+$/, ""));

// One axis: n input pixels, kernel f, stride s, dilation d, padding "valid" | "same".
export function outputSize(n, f, s, d, padding) {
  const fEff = d * (f - 1) + 1;
  let before = 0;
  let after = 0;
  if (padding === "same") {
    const total = Math.max((Math.ceil(n / s) - 1) * s + fEff - n, 0);
    before = Math.floor(total / 2);
    after = total - before;
  }
  const exact = (n + before + after - fEff) / s + 1;
  const size = Math.floor(exact);
  const pad = before === after ? `2·${before}` : `${before} + ${after}`;
  const generic = before === after ? "(n + 2p − f)/s + 1" : "(n + p_before + p_after − f)/s + 1";
  let filled = `(${n} + ${pad} − ${fEff})/${s} + 1 = ${fmt(exact)}`;
  if (!Number.isInteger(exact)) filled += ` → floor → ${size}`;
  const notes = [];
  if (d > 1) notes.push(`f_eff = ${d}·(${f} − 1) + 1 = ${fEff} (dilation ${d})`);
  if (padding === "same") notes.push(`same padding: ${before} zero(s) before, ${after} after`);
  return { generic, filled, size, notes };
}

function paramsOf(row, cIn) {
  const type = row.type;
  if (/Pooling/.test(type)) return { generic: "pooling has no weights", filled: "0", value: 0 };
  if (type === "Conv2D" && cIn != null) {
    const [kh, kw] = row.kernel_size;
    const k = `${kh}·${kw}`;
    const withBias = (kh * kw * cIn + 1) * row.filters;
    const noBias = kh * kw * cIn * row.filters;
    if (row.params === noBias && noBias !== withBias) {
      return { generic: "(f·f·c_in)·filters (no bias)",
        filled: `(${k}·${cIn})·${row.filters} = ${noBias}`, value: noBias };
    }
    return { generic: "(f·f·c_in + 1)·filters",
      filled: `(${k}·${cIn} + 1)·${row.filters} = ${withBias}`, value: withBias };
  }
  if (type === "Dense" && cIn != null && row.output_shape) {
    const units = row.output_shape[row.output_shape.length - 1];
    const value = (cIn + 1) * units;
    return { generic: "(inputs + 1)·units", filled: `(${cIn} + 1)·${units} = ${value}`, value };
  }
  return null;
}

// {output: [{axis, generic, filled, size, notes, matches}], params, inShape} for a row.
export function explainRow(rows, index, modelInput) {
  const row = rows[index];
  const inShape = inputShapeOf(rows, index, modelInput);
  const cIn = inShape ? inShape[inShape.length - 1] : null;
  const result = { inShape, output: [], params: null };
  if (WINDOWED.test(row.type) && inShape && inShape.length === 3 && row.kernel_size) {
    const axes = [["height", 0], ["width", 1]];
    const same = row.kernel_size[0] === row.kernel_size[1] && row.strides[0] === row.strides[1] &&
      inShape[0] === inShape[1];
    for (const [axis, i] of same ? [axes[0]] : axes) {
      const d = row.dilation_rate ? row.dilation_rate[i] : 1;
      const n = inShape[i];
      if (n == null) continue;
      const out = outputSize(n, row.kernel_size[i], row.strides[i], d, row.padding);
      const actual = row.output_shape ? row.output_shape[i] : null;
      result.output.push({ axis: same ? "height and width" : axis, ...out,
        matches: actual == null || actual === out.size });
    }
  }
  const params = paramsOf(row, cIn);
  if (params) result.params = { ...params, matches: params.value === row.params };
  return result;
}
