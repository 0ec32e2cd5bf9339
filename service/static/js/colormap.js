// Viridis (matplotlib's default colormap), as 9 stops interpolated linearly into a 256 LUT.

const STOPS = [
  [68, 1, 84], [72, 40, 120], [62, 73, 137], [49, 104, 142], [38, 130, 142],
  [31, 158, 137], [53, 183, 121], [110, 206, 88], [253, 231, 37],
];

const LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = (i / 255) * (STOPS.length - 1);
    const k = Math.min(Math.floor(t), STOPS.length - 2);
    const f = t - k;
    for (let j = 0; j < 3; j++) lut[i * 3 + j] = STOPS[k][j] * (1 - f) + STOPS[k + 1][j] * f;
  }
  return lut;
})();

export function colorOf(t) {
  const i = Math.max(0, Math.min(255, Math.round(t * 255))) * 3;
  return `rgb(${LUT[i]}, ${LUT[i + 1]}, ${LUT[i + 2]})`;
}

// Draw one channel ({values, height, width, min, max}) onto canvas at its native size;
// CSS scales it up (image-rendering: pixelated).
export function drawChannel(canvas, map) {
  canvas.width = map.width;
  canvas.height = map.height;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(map.width, map.height);
  const span = map.max - map.min;
  for (let i = 0; i < map.values.length; i++) {
    const t = span > 0 ? (map.values[i] - map.min) / span : 0;
    const k = Math.round(t * 255) * 3;
    image.data[i * 4] = LUT[k];
    image.data[i * 4 + 1] = LUT[k + 1];
    image.data[i * 4 + 2] = LUT[k + 2];
    image.data[i * 4 + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
}
