"""Reading audio/video files with ffprobe/ffmpeg; never modifies an original."""
