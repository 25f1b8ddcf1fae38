"""`invaders sweep`: settings × seeds on Ray Tune, tracked in MLflow, with an honest summary."""
