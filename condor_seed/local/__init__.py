"""The local target: bake a recipe into a root filesystem and run a real HTCondor pool from it."""
