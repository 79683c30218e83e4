"""`expdb ui`: the study in a browser. The server is `expdb.ui.app`, what it shows `expdb.ui.data`."""
