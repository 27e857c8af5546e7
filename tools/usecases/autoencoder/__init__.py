"""A dense autoencoder of handwritten digits: the model, its data, training, bench and report."""
