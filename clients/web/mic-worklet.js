// AudioWorklet that hands the microphone's samples to the page, interleaved float32.
// Why a worklet: it runs on the audio thread, so no samples drop while the page is busy.
class MicTap extends AudioWorkletProcessor {
  process(inputs) {
    const input = inputs[0];
    if (input && input.length) {
      const n = input[0].length, c = input.length;
      const out = new Float32Array(n * c);
      for (let i = 0; i < n; i++) for (let ch = 0; ch < c; ch++) out[i * c + ch] = input[ch][i];
      this.port.postMessage({ channels: c, samples: out }, [out.buffer]);
    }
    return true;
  }
}
registerProcessor("mic-tap", MicTap);
