"""The settings model, the ``weijian`` command line and the pipeline that chains the stages."""
