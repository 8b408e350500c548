"""Training for Keras-style models: fit loop, losses, metrics, callbacks, resume and data parallelism."""
from lstmkit.train.callbacks import (BackupAndRestore, Callback, CSVLogger, EarlyStopping, History,  # noqa: F401
                                     LambdaCallback, ModelCheckpoint, ReduceLROnPlateau, TerminateOnNaN)
from lstmkit.train.loop import evaluate, fit, predict  # noqa: F401
