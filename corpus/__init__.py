"""Building data for minutes: real corpora, TTS voices, rooms and arrays, mixtures, meetings.

    minutes corpus build --recipe real    --out /work/data/corpus/speechocean762
    minutes corpus build --recipe single  --out /work/data/corpus/single  --hours 10 --seed 0
    minutes corpus build --recipe mixture --out /work/data/corpus/mixture --hours 1
    minutes corpus build --recipe meeting --out /work/data/corpus/meeting --count 24 --min-minutes 2 --max-minutes 3

Modules: `text` (`minutes.text`'s normaliser, re-exported), `sentences` (text sources, test-only
sentences), `readers` (speechocean762, Kaldi folders, LibriSpeech; speaker-held-out splits),
`tts` (voices and pseudo-speakers, held-out identities; array presets live in `minutes.arrays`),
`rooms` (shoebox RIRs with fitted late tails, diffuse noise, moving sources), `trajectory`,
`align` (word times), `manifest` (JSONL records), `build` (sharded process pool),
`recipes/` (real, single, mixture, meeting), `sample_meeting` (the demo page's bundled samples).
Same seed, same bytes.
"""
