"""Text models: the word tokenizer and vocabulary (words), GloVe / word2vec files (vectors), the
text cards and the networks built from them (network, bodies), token ids and batches (inputs)."""
