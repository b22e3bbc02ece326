/** Seed 004's first message (its `session.create`), byte for byte as the seed's client sends it. */
export const SEED_004_SESSION_CREATE = {
  type: 'session.create',
  session: {
    modalities: ['text', 'audio'],
    instructions: 'You are a helpful assistant.',
    voice: 'alloy',
    input_audio_format: 'pcm16',
    output_audio_format: 'pcm16',
    input_audio_transcription: { model: 'whisper-1' },
    turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200 },
  },
};
