"""Microcontroller export (targets of kind ``mcu``), one module per step, like TVM's per-target folders.

- :mod:`export.mcu.schedule`: the fused kernels scheduled for a scalar FPU;
- :mod:`export.mcu.codegen`: the lowered module as plain C (weights in flash, static tensors, arena);
- :mod:`export.mcu.firmware`: kernels object, generated C and linked image in the bundle, sized and verified;
- :mod:`export.mcu.session`: the firmware running under ``qemu-system-arm``, spoken to in frames.

Nothing is imported here: ``from export.mcu.codegen import ...`` loads only what it names.
"""
