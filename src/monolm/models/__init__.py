"""Model and tokenizer loading, FFN discovery, and the LightningModule shared by both families."""
