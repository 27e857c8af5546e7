"""tools/controllers/: controller files, native (``native``) and trained elsewhere (``formats``), loaded by ``load``."""
