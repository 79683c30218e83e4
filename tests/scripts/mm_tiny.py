# An MMEngine config, as MMDetection's are written: the vis backend named by type, found by its registration.
custom_imports = dict(imports=["mmengine_tiny", "expdb.integrations.mmengine"], allow_failed_imports=False)
model = dict(type="TinyRegressor", width=4)
_loader = dict(
    dataset=dict(type="TinyRegression", size=32), sampler=dict(type="DefaultSampler", shuffle=False),
    batch_size=8, collate_fn=dict(type="default_collate"),
)
train_dataloader = _loader
val_dataloader = _loader
val_evaluator = dict(type="TinyMSE")
optim_wrapper = dict(optimizer=dict(type="SGD", lr=0.05))
train_cfg = dict(by_epoch=True, max_epochs=2, val_interval=1)
val_cfg = dict()
default_hooks = dict(logger=dict(type="LoggerHook", interval=1), checkpoint=dict(type="CheckpointHook", interval=100))
visualizer = dict(
    type="Visualizer",
    vis_backends=[dict(type="LocalVisBackend"), dict(type="ExpdbVisBackend", config_params=["optim_wrapper.optimizer.lr"])],
)
