from twisted.application.service import ServiceMaker

recsvc = ServiceMaker("recsvc", "recsvc.tap", "Call recorder for Fanvil phones", "recsvc")
