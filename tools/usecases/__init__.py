"""tools/usecases/: the models the project prunes beyond the reference MLP, one package each (model, train,
evaluate, export, bench)."""
