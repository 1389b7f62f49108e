"""Images and datasets: folders, streams, buckets, kohya folders, preprocessing, synthetic styles."""
