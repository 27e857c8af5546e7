"""The bundled Pendulum-v1 reference controller: how it is trained."""
