"""Compression and deployment: complexity accounting, tf_keras twins, tfmot pruning/QAT, int8 TFLite."""
