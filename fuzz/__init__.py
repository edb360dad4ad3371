"""Coverage-guided fuzzing of the engine's decoders (make fuzz; README "Guarantees")."""
