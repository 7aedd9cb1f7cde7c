from core.server import main
from vats_lifetime import end_with_launcher

end_with_launcher()
main()
