import sys

import six

if "--check" in sys.argv:
    print("hello is installed, six", six.__version__)
else:
    print("hello from a shlax-built image")
