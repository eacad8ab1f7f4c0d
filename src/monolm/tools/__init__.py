"""Commands above the subject loader: verify and export a trained model."""
